"""Media: aiortc peers per participant, a bounded relay of the customer's video, snapshot composition."""
