"""The CLI's commands, one module per verb; ``tenure.cli`` assembles them."""
