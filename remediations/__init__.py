"""One module per failure class, installed as ``autoremedy.remediations``.

Each module sets ``REMEDIATION`` to a subclass of
``autoremedy.remediation.Remediation`` (plan / run / verify). They are always
performed through ``autoremedy.remediation.perform``, which applies every guard.
"""
