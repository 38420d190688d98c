"""The cascade's three stages and the interface every recommender implements."""
