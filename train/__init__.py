"""Training sub-project: datasets and training loops; imports core, and core never imports it."""
