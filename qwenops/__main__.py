from qwenops.cli import main

main()
