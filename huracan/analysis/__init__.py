"""Post-training analysis (qlib-style records): feature-importance rankings stored per run,
shift alerts between rankings, and the commands that read them."""
