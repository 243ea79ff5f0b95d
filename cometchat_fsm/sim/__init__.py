"""The Simulation: the core driven in virtual time against an ideal server, and its script language."""
