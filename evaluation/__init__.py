"""Training the detector and measuring detection: above producer/ and processor/."""
