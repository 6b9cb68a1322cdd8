"""The rotation steps and the loop that drives them. The CLI and the daemon call these."""
