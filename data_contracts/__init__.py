"""medconcepts: data_contracts."""
