from proximadb.cli.main import main

main()
