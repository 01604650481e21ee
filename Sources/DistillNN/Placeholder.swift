public enum DistillNNPlaceholder {}
