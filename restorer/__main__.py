from restorer.cli import main

main()
