"""The ground floor: the bundle format and what every other package shares (errors, file I/O, the data
folder, the committed-input layout, source kinds). It imports nothing of the project's."""
