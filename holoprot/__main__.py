from holoprot.cli import main

main()
