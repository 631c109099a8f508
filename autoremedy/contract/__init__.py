"""The plugin contract: what a check returns and how it is presented, what a remediation is and the one guarded way to perform it, the subprocess boundary."""
