from postergenre.cli import main

main()
