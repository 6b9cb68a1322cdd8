"""Expiry alerts and posture findings for security teams.

``thresholds``, ``findings`` and ``compose`` are pure (no I/O); ``notifiers``
talks to webhooks, SMTP and the log; ``runner.alert_pass`` ties them to the
database, once per pass.
"""
