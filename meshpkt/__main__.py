from meshpkt.cli.main import main

main()
