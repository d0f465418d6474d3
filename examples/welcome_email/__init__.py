"""The welcome-email example from the RedwoodJS background-jobs guide, in queuebox."""
