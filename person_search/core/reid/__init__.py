"""Person re-identification: the OSNet model, its encoder stage, and the Market-1501 evaluation protocol."""
