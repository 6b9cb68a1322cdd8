from rotator.cli.main import main

main()
