"""Panel pages: each module is one page area; views take domain objects as parameters."""
