from se3mol.cli.app import main

main()
