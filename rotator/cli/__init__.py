"""Admin commands. They parse arguments and call the engine; nothing else lives here."""
