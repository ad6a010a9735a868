"""medconcepts: models."""
