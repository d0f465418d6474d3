from queuebox.cli import main

main()
