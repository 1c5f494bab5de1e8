from builder.cli.client import main

main()
