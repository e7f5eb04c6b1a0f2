"""series-selector: choose the image series an AI model needs, by rules users can read and debug."""
