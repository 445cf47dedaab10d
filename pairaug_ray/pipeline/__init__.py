"""Jobs that chain stages: prepare (corpus + models), and later augment, train, evaluate."""
