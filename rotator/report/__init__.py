"""The expiry and posture report (HTML, CSV, JSON), built from the database alone."""
