"""Reading a run's curves for the user: automatic diagnosis of training histories, and plots."""
