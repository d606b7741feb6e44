"""Serverless background tasks: the logic shared by every Lambda function."""
