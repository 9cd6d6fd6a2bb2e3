"""What a listener hears, in numbers: signal measures, metrics, PESQ/STOI/ViSQOL, reference-free."""
