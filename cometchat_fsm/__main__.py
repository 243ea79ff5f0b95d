"""`python -m cometchat_fsm` is the `cometchat-fsm` command."""

from .cli import main

raise SystemExit(main())
