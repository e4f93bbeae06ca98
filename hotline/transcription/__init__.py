"""Speech to text: audio preparation, recognizers, transcription jobs, transcripts."""
