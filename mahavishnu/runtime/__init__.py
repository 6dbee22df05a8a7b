"""Running the mesh on this machine: `up`, its supervisor, the nats-server child or cluster, the state directory."""
