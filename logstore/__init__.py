"""warrenmq.logstore."""
