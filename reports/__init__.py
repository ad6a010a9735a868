"""medconcepts: reports."""
