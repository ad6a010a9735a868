"""medconcepts: flows."""
