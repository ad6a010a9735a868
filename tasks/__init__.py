"""medconcepts: tasks."""
