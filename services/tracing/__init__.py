"""`staffetta trace`: follow one message through the services by its queue id in the logs."""
