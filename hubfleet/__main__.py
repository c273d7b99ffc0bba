from hubfleet.cli import main

main()
