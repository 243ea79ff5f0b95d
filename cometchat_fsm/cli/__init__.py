"""The command line `cometchat-fsm` and the demo it runs."""
