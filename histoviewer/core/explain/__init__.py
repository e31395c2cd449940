"""Why the AI decided: Grad-CAM, feature contributions, test-time-augmentation uncertainty."""
