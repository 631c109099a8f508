"""One module per failure class, installed as ``autoremedy.remediations``.

Each module sets ``REMEDIATION`` to a subclass of
``autoremedy.contract.remediation.Remediation`` (plan / run / verify). They are always
performed through ``autoremedy.contract.remediation.perform``, which applies every guard.
"""
