from xfer.cli import main

main()
