from ttpscope.cli.main import main

main()
