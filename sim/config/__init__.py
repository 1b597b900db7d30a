"""YAML files -> frozen validated objects: line numbers, --set paths, kernel parameter
sections, scenarios, sweep files and their filters, and real /proc/zoneinfo for calibration."""
