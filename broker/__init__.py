"""warrenmq.broker: the server that joins the wire, routing and the log."""
