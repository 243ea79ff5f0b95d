"""`python -m cometchat_fsm` is the `cometchat-fsm` command."""

from cometchat_fsm.cli.main import main

raise SystemExit(main())
