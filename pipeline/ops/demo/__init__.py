"""`vmlb demo`: the whole system on one machine, with live monitoring and a closing summary."""
