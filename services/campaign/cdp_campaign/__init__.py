"""Campaign service: journeys and their deliveries."""
