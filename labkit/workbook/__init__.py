"""What the notebooks use besides `Lab`: scenarios, the saga client, widgets, plots, figures,
checks (the checkpoints), the route table and call graph, and the notebook files themselves."""
