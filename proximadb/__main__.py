from proximadb.cli.entry import main

main()
