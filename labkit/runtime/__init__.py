"""Where the lab runs: local processes (`local`) or a Kubernetes cluster (`cluster`)."""
